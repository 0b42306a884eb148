//! The wire form of a request and of its answer, and their codec.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

use crate::clock::{Clock as _, SystemClock};

/// The wire form: id, reply topic, deadline, route, payload. The reply topic
/// is a gateway's `rpc-reply.<node>`, far shorter than the 65,535 bytes its
/// length field holds.
#[derive(Debug)]
pub struct Envelope {
    pub id: u64,
    pub reply_to: String,
    pub deadline_ms: i64,
    pub shard: Option<u32>,
    pub payload: Bytes,
}

impl Envelope {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(32 + self.reply_to.len() + self.payload.len());
        buf.put_u64(self.id);
        buf.put_u16(self.reply_to.len() as u16);
        buf.put_slice(self.reply_to.as_bytes());
        buf.put_i64(self.deadline_ms);
        buf.put_u32(self.shard.map_or(u32::MAX, |s| s));
        buf.put_slice(&self.payload);
        buf.freeze()
    }

    pub fn decode(mut bytes: Bytes) -> Option<Self> {
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
pub fn encode_answer(id: u64, reply: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(8 + reply.len());
    framed.put_u64(id);
    framed.put_slice(reply);
    framed.freeze()
}

pub fn decode_answer(mut bytes: Bytes) -> Option<(u64, Bytes)> {
    if bytes.len() < 8 {
        return None;
    }
    let id = bytes.get_u64();
    Some((id, bytes))
}

pub fn now_ms() -> i64 {
    SystemClock.now_ms()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

    fn envelope() -> impl Strategy<Value = Envelope> {
        (
            any::<u64>(),
            // A gateway's reply topic, `rpc-reply.<node>`, or any short text.
            prop_oneof!["rpc-reply\\.[0-9]{1,20}", "\\PC{0,64}"],
            any::<i64>(),
            proptest::option::of(0..u32::MAX),
            proptest::collection::vec(any::<u8>(), 0..512),
        )
            .prop_map(|(id, reply_to, deadline_ms, shard, payload)| Envelope {
                id,
                reply_to,
                deadline_ms,
                shard,
                payload: Bytes::from(payload),
            })
    }

    proptest! {
        #[test]
        fn every_envelope_decodes_from_its_encoding(e in envelope()) {
            let d = Envelope::decode(e.encode());
            prop_assert!(d.is_some());
            let d = d.unwrap();
            prop_assert_eq!(
                (d.id, &d.reply_to, d.deadline_ms, d.shard, &d.payload),
                (e.id, &e.reply_to, e.deadline_ms, e.shard, &e.payload)
            );
        }

        #[test]
        fn bytes_that_decode_encode_back_to_themselves(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let raw = Bytes::from(bytes);
            if let Some(e) = Envelope::decode(raw.clone()) {
                prop_assert_eq!(e.encode(), raw.clone());
            }
            if let Some((id, reply)) = decode_answer(raw.clone()) {
                prop_assert_eq!(encode_answer(id, &reply), raw);
            }
        }

        #[test]
        fn every_answer_decodes_from_its_encoding(
            id in any::<u64>(),
            reply in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            prop_assert_eq!(decode_answer(encode_answer(id, &reply)), Some((id, Bytes::from(reply))));
        }
    }
}
