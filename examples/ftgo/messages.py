"""Every message of the FTGO system: commands, the documents that answer them, events.

Type names carry the owning service (``kitchen.CreateTicket``), so a message
says where it belongs wherever it is read.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from seawall import Command, Document, Event

# -- consumer ---------------------------------------------------------------------------


class ValidateConsumer(Command, frozen=True):
    type_name: ClassVar[str] = "consumer.ValidateConsumer"
    consumer_id: str
    order_id: str


class ConsumerVerified(Document, frozen=True):
    type_name: ClassVar[str] = "consumer.ConsumerVerified"
    consumer_id: str
    ok: bool


# -- restaurant -------------------------------------------------------------------------


class ReviseMenu(Command, frozen=True):
    type_name: ClassVar[str] = "restaurant.ReviseMenu"
    restaurant_id: str
    prices: dict[str, int]
    """Item name -> price in cents."""


class MenuRevised(Event, frozen=True):
    type_name: ClassVar[str] = "restaurant.MenuRevised"
    restaurant_id: str
    version: int
    prices: dict[str, int]


# -- order ------------------------------------------------------------------------------

OrderState = Literal["approved", "rejected"]


class CreateOrder(Command, frozen=True):
    type_name: ClassVar[str] = "order.CreateOrder"
    order_id: str
    consumer_id: str
    restaurant_id: str
    items: list[str]
    card: str


class OrderOutcome(Document, frozen=True):
    type_name: ClassVar[str] = "order.OrderOutcome"
    order_id: str
    state: OrderState
    reason: str = ""
    total: int = 0


class OrderApproved(Event, frozen=True):
    type_name: ClassVar[str] = "order.OrderApproved"
    order_id: str
    restaurant_id: str
    total: int


class OrderRejected(Event, frozen=True):
    type_name: ClassVar[str] = "order.OrderRejected"
    order_id: str
    reason: str


# -- kitchen ----------------------------------------------------------------------------


class CreateTicket(Command, frozen=True):
    type_name: ClassVar[str] = "kitchen.CreateTicket"
    order_id: str
    restaurant_id: str
    items: list[str]


class ApproveTicket(Command, frozen=True):
    type_name: ClassVar[str] = "kitchen.ApproveTicket"
    order_id: str


class CancelTicket(Command, frozen=True):
    type_name: ClassVar[str] = "kitchen.CancelTicket"
    order_id: str


class TicketState(Document, frozen=True):
    type_name: ClassVar[str] = "kitchen.TicketState"
    order_id: str
    state: Literal["pending", "approved", "cancelled", "none"]


# -- accounting -------------------------------------------------------------------------


class AuthorizeCard(Command, frozen=True):
    type_name: ClassVar[str] = "accounting.AuthorizeCard"
    order_id: str
    consumer_id: str
    card: str
    total: int


class CardAuthorization(Document, frozen=True):
    type_name: ClassVar[str] = "accounting.CardAuthorization"
    order_id: str
    approved: bool


# -- delivery and couriers --------------------------------------------------------------


class RequestOffer(Command, frozen=True):
    type_name: ClassVar[str] = "delivery.RequestOffer"
    order_id: str
    restaurant_id: str


class CourierOffer(Document, frozen=True):
    type_name: ClassVar[str] = "delivery.CourierOffer"
    courier: str
    minutes: int


class AssignCourier(Command, frozen=True):
    type_name: ClassVar[str] = "courier.AssignCourier"
    order_id: str
