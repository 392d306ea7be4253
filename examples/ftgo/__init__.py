"""FTGO, the "food to go" system of the microservices literature, on seawall.

Seven services, each in its own OS process under ``seawall up``, each owning
its state (a private SQLite file) and talking to the others only by messages:
Consumer, Restaurant, Order (a saga with compensation), Kitchen (two
instances), Accounting, Delivery and two Couriers. ``python -m examples.ftgo``
(``make demo``) starts the system, drives orders through it while injecting
faults, and checks the invariants; ``docs/demo.md`` walks through the flows.
"""
