//! What the wallet writes into chats (a transfer's card at each change of
//! status, a red packet's card when it is sent) and what it tells people
//! live ([`WalletEvent`]s on their user topics, and a group's grabs on the
//! group's topic).

use bytes::Bytes;
use prost::Message as _;
use superapp_kit::bus::Bus;
use superapp_proto::Topic;
use superapp_proto::v1::{
    BusEnvelope, Event, RedPacketCard, RedPacketMode, Special, TransferCard, WalletEvent,
    bus_envelope, event, wallet_event::Kind,
};

use super::yuan;
use crate::error::WalletError;
use crate::model::{
    Fen, Grab, OrderId, Packet, PacketMode, PacketStatus, Place, Transfer, TransferStatus, UserId,
};
use crate::ports::Chats;

pub(super) struct Cards<'a> {
    pub(super) bus: &'a dyn Bus,
    pub(super) chats: &'a dyn Chats,
}

impl Cards<'_> {
    /// Writes the transfer's card as it now stands into the one-to-one
    /// chat, as a message of `by` (who made the change), and tells both
    /// sides. The chat stores one card per transfer and status.
    pub(super) async fn transfer(
        &self,
        transfer: &Transfer,
        by: UserId,
    ) -> Result<(), WalletError> {
        let status = transfer_status(transfer.status);
        let card = TransferCard {
            transfer_id: transfer.id.0,
            from_user: transfer.from.0,
            to_user: transfer.to.0,
            amount_fen: transfer.amount,
            memo: transfer.memo.clone(),
            status: status as i32,
            expires_at_ms: transfer.expires_ms,
        };
        let peer = if by == transfer.from {
            transfer.to
        } else {
            transfer.from
        };
        let fallback = match transfer.status {
            TransferStatus::Pending => format!("[Transfer] ¥{}", yuan(transfer.amount)),
            TransferStatus::Accepted => format!("[Transfer accepted] ¥{}", yuan(transfer.amount)),
            TransferStatus::Declined => format!("[Transfer declined] ¥{}", yuan(transfer.amount)),
            TransferStatus::Expired => format!("[Transfer returned] ¥{}", yuan(transfer.amount)),
        };
        self.chats
            .post(
                by,
                Place::Direct(peer),
                Special {
                    r#type: "transfer".into(),
                    value: card.encode_to_vec(),
                },
                fallback,
                format!("transfer:{}:{}", transfer.id, transfer.status.as_str()),
            )
            .await
            .map_err(WalletError::Dependency)?;
        for user in [transfer.from, transfer.to] {
            self.tell(
                Topic::User(user),
                WalletEvent {
                    kind: Kind::Transfer.into(),
                    transfer_id: transfer.id.0,
                    status: status as i32,
                    user_id: by.0,
                    amount_fen: transfer.amount,
                    ..WalletEvent::default()
                },
            );
        }
        Ok(())
    }

    /// Writes the packet's card into its chat, as a message of its sender.
    pub(super) async fn packet(&self, packet: &Packet) -> Result<(), WalletError> {
        let card = RedPacketCard {
            packet_id: packet.id.0,
            sender: packet.sender.0,
            amount_fen: packet.amount,
            count: packet.count(),
            mode: match packet.mode {
                PacketMode::Lucky => RedPacketMode::Lucky,
                PacketMode::Equal => RedPacketMode::Equal,
                PacketMode::Exclusive => RedPacketMode::Exclusive,
            } as i32,
            exclusive_to: packet.exclusive_to.map_or(0, |u| u.0),
            greeting: packet.greeting.clone(),
            expires_at_ms: packet.expires_ms,
        };
        let fallback = if packet.greeting.is_empty() {
            "[Red packet]".to_string()
        } else {
            format!("[Red packet] {}", packet.greeting)
        };
        self.chats
            .post(
                packet.sender,
                packet.place,
                Special {
                    r#type: "red_packet".into(),
                    value: card.encode_to_vec(),
                },
                fallback,
                format!("packet:{}", packet.id),
            )
            .await
            .map_err(WalletError::Dependency)
    }

    /// Tells the packet's place that `grab` happened ("X opened your red
    /// packet"), and that the packet is finished when it is.
    pub(super) fn grabbed(&self, packet: &Packet, grab: &Grab) {
        let grabbed = WalletEvent {
            kind: Kind::PacketGrabbed.into(),
            packet_id: packet.id.0,
            user_id: grab.user.0,
            amount_fen: grab.amount,
            ..WalletEvent::default()
        };
        let finished = (packet.status == PacketStatus::Finished).then(|| WalletEvent {
            kind: Kind::PacketFinished.into(),
            packet_id: packet.id.0,
            user_id: if packet.count() > 1 {
                packet.best.map_or(0, |(who, _)| who.0)
            } else {
                0
            },
            ..WalletEvent::default()
        });
        for event in std::iter::once(grabbed).chain(finished) {
            self.to_place(packet, event);
        }
    }

    /// Tells the packet's place that its rest went back to its sender.
    pub(super) fn refunded(&self, packet: &Packet) {
        self.tell(
            Topic::User(packet.sender),
            WalletEvent {
                kind: Kind::PacketRefunded.into(),
                packet_id: packet.id.0,
                user_id: packet.sender.0,
                amount_fen: packet.refunded,
                ..WalletEvent::default()
            },
        );
    }

    /// A group's packet is news for the group; a one-to-one packet for
    /// its two sides.
    fn to_place(&self, packet: &Packet, event: WalletEvent) {
        match packet.place {
            Place::Group(group) => self.tell(Topic::Group(group), event),
            Place::Direct(peer) => {
                self.tell(Topic::User(packet.sender), event.clone());
                self.tell(Topic::User(peer), event);
            }
        }
    }

    /// Tells `owner` their new balance.
    pub(super) fn balance(&self, owner: UserId, balance: Fen) {
        self.tell(
            Topic::User(owner),
            WalletEvent {
                kind: Kind::Balance.into(),
                user_id: owner.0,
                balance_fen: balance,
                ..WalletEvent::default()
            },
        );
    }

    /// Tells `owner` their order changed status.
    pub(super) fn order(&self, owner: UserId, order: OrderId, status: &str) {
        self.tell(
            Topic::User(owner),
            WalletEvent {
                kind: Kind::Order.into(),
                order_id: order.0,
                user_id: owner.0,
                order_status: status.to_string(),
                ..WalletEvent::default()
            },
        );
    }

    fn tell(&self, topic: Topic, event: WalletEvent) {
        let envelope = BusEnvelope {
            kind: Some(bus_envelope::Kind::Event(Event {
                kind: Some(event::Kind::Wallet(event)),
            })),
            origin: 0,
            target: 0,
        };
        self.bus
            .publish(&topic.to_string(), Bytes::from(envelope.encode_to_vec()));
    }
}

fn transfer_status(status: TransferStatus) -> superapp_proto::v1::TransferStatus {
    use superapp_proto::v1::TransferStatus as S;
    match status {
        TransferStatus::Pending => S::Pending,
        TransferStatus::Accepted => S::Accepted,
        TransferStatus::Declined => S::Declined,
        TransferStatus::Expired => S::Expired,
    }
}
