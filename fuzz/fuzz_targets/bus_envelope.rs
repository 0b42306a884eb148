//! A message from the bus as the hub takes it (`gateway/src/hub.rs`): the
//! topic's name, then a `BusEnvelope`. The first input byte says how many of
//! the following bytes are the topic; the rest is the payload.
//!
//! Neither parse panics. A topic name that parses is the one canonical
//! spelling of its topic. An envelope that decodes encodes to bytes that
//! decode to the same envelope.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use superapp_proto::Topic;
use superapp_proto::v1::BusEnvelope;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (topic, payload) = rest.split_at(usize::from(split).min(rest.len()));
    if let Ok(name) = std::str::from_utf8(topic)
        && let Ok(parsed) = name.parse::<Topic>()
    {
        assert_eq!(parsed.to_string(), name);
    }
    if let Ok(envelope) = BusEnvelope::decode(Bytes::copy_from_slice(payload)) {
        let again = BusEnvelope::decode(envelope.encode_to_vec().as_slice());
        assert_eq!(again.ok(), Some(envelope));
    }
});
