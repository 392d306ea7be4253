"""Every message of the FTGO system: commands, the documents that answer them, events.

Type names carry the owning service (``kitchen.CreateTicket``), so a message
says where it belongs wherever it is read.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

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


class ApproveOrder(Command, frozen=True):
    """The create-order saga's last step: the Order service approves its own order."""

    type_name: ClassVar[str] = "order.ApproveOrder"
    order_id: str


class RejectOrder(Command, frozen=True):
    """The create-order saga's last compensation: the order ends rejected, with why."""

    type_name: ClassVar[str] = "order.RejectOrder"
    order_id: str
    reason: str


class OrderDetails(msgspec.Struct, frozen=True):
    """The create-order saga's data: the order as placed, priced from the menu replica."""

    order_id: str
    consumer_id: str
    restaurant_id: str
    items: list[str]
    card: str
    total: int


# -- kitchen ----------------------------------------------------------------------------


class CreateTicket(Command, frozen=True):
    type_name: ClassVar[str] = "kitchen.CreateTicket"
    order_id: str
    restaurant_id: str
    items: list[str]


class ApproveTicket(Command, frozen=True):
    type_name: ClassVar[str] = "kitchen.ApproveTicket"
    order_id: str


class RejectTicket(Command, frozen=True):
    """The order saga's compensation of CreateTicket."""

    type_name: ClassVar[str] = "kitchen.RejectTicket"
    order_id: str


TicketStatus = Literal["pending", "approved", "rejected", "none"]


class TicketState(Document, frozen=True):
    type_name: ClassVar[str] = "kitchen.TicketState"
    order_id: str
    state: TicketStatus


class TicketChanged(Event, frozen=True):
    type_name: ClassVar[str] = "kitchen.TicketChanged"
    order_id: str
    state: TicketStatus


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


class ReverseAuthorization(Command, frozen=True):
    """The order saga's compensation of AuthorizeCard."""

    type_name: ClassVar[str] = "accounting.ReverseAuthorization"
    order_id: str


AuthorizationStatus = Literal["authorized", "declined", "reversed"]


class AuthorizationChanged(Event, frozen=True):
    type_name: ClassVar[str] = "accounting.AuthorizationChanged"
    order_id: str
    state: AuthorizationStatus


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
