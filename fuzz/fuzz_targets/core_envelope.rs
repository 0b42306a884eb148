//! What a core reads from a Redis request list and a gateway from its reply
//! topic (`kit/src/rpc/envelope.rs`), and the protobuf inside: `CoreRequest`
//! in a request, `CoreResponse` in an answer (`gateway/src/backend.rs`).
//!
//! Decoding never panics. An envelope that decodes encodes to exactly the
//! bytes it came from, and so does an answer. A request or answer payload that
//! decodes encodes to bytes that decode to the same message.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use superapp_kit::rpc::envelope::{Envelope, decode_answer, encode_answer};
use superapp_proto::v1::{CoreRequest, CoreResponse};

fn round_trips<M: Message + Default + PartialEq + std::fmt::Debug>(payload: &[u8]) {
    if let Ok(message) = M::decode(payload) {
        let again = M::decode(message.encode_to_vec().as_slice());
        assert_eq!(again.ok(), Some(message));
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = Bytes::copy_from_slice(data);
    if let Some(envelope) = Envelope::decode(raw.clone()) {
        assert_eq!(envelope.encode(), raw);
        round_trips::<CoreRequest>(&envelope.payload);
    }
    if let Some((id, reply)) = decode_answer(raw.clone()) {
        assert_eq!(encode_answer(id, &reply), raw);
        round_trips::<CoreResponse>(&reply);
    }
});
