//! The wire form of a request and of its answer, and their codec.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

use crate::clock::{Clock as _, SystemClock};

/// The wire form: id, reply topic, deadline, route, payload.
pub(super) struct Envelope {
    pub(super) id: u64,
    pub(super) reply_to: String,
    pub(super) deadline_ms: i64,
    pub(super) shard: Option<u32>,
    pub(super) payload: Bytes,
}

impl Envelope {
    pub(super) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(32 + self.reply_to.len() + self.payload.len());
        buf.put_u64(self.id);
        buf.put_u16(self.reply_to.len() as u16);
        buf.put_slice(self.reply_to.as_bytes());
        buf.put_i64(self.deadline_ms);
        buf.put_u32(self.shard.map_or(u32::MAX, |s| s));
        buf.put_slice(&self.payload);
        buf.freeze()
    }

    pub(super) fn decode(mut bytes: Bytes) -> Option<Self> {
        if bytes.len() < 10 {
            return None;
        }
        let id = bytes.get_u64();
        let len = bytes.get_u16() as usize;
        if bytes.len() < len + 12 {
            return None;
        }
        let reply_to = String::from_utf8(bytes.split_to(len).to_vec()).ok()?;
        let deadline_ms = bytes.get_i64();
        let shard = match bytes.get_u32() {
            u32::MAX => None,
            s => Some(s),
        };
        Some(Self {
            id,
            reply_to,
            deadline_ms,
            shard,
            payload: bytes,
        })
    }
}

/// An answer on the bus: the request's id, then the handler's reply.
pub(super) fn encode_answer(id: u64, reply: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(8 + reply.len());
    framed.put_u64(id);
    framed.put_slice(reply);
    framed.freeze()
}

pub(super) fn decode_answer(mut bytes: Bytes) -> Option<(u64, Bytes)> {
    if bytes.len() < 8 {
        return None;
    }
    let id = bytes.get_u64();
    Some((id, bytes))
}

pub(super) fn now_ms() -> i64 {
    SystemClock.now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_garbage_is_refused() {
        let e = Envelope {
            id: 7,
            reply_to: "rpc-reply.g1".into(),
            deadline_ms: 99,
            shard: Some(3),
            payload: Bytes::from_static(b"hello"),
        };
        let d = Envelope::decode(e.encode()).unwrap();
        assert_eq!(
            (
                d.id,
                d.reply_to.as_str(),
                d.deadline_ms,
                d.shard,
                d.payload.as_ref()
            ),
            (7, "rpc-reply.g1", 99, Some(3), &b"hello"[..])
        );
        assert!(Envelope::decode(Bytes::from_static(b"short")).is_none());
        assert!(
            Envelope::decode(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 1]))
                .is_none()
        );
    }

    #[test]
    fn answers_carry_their_request_id() {
        let framed = encode_answer(7, b"reply");
        assert_eq!(
            decode_answer(framed),
            Some((7, Bytes::from_static(b"reply")))
        );
        assert_eq!(decode_answer(Bytes::from_static(b"short")), None);
    }
}
