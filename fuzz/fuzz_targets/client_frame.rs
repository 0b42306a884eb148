//! A client's WebSocket frame, as the gateway session decodes it
//! (`gateway/src/session.rs`), and the conversation names inside it.
//!
//! Decoding never panics. A frame that decodes encodes to bytes that decode
//! to the same frame. A conversation name that parses is the one canonical
//! spelling of its conversation. A message body, of any kind, is checked
//! by chat's policy without panicking; one it takes holds none of what the
//! server fills, and gets a fallback exactly when it is not a text.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use superapp_proto::ConversationId;
use superapp_chat::policy;
use superapp_proto::v1::message_body::Content;
use superapp_proto::v1::{ClientFrame, client_frame::Request};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = ClientFrame::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let encoded = frame.encode_to_vec();
    assert_eq!(encoded.len(), frame.encoded_len());
    assert_eq!(
        ClientFrame::decode(encoded.as_slice()).ok(),
        Some(frame.clone())
    );
    if let Some(Request::Send(send)) = &frame.request {
        if let Ok(body) = policy::check_body(send.body.clone()) {
            assert!(body.fallback.is_empty());
            let text = matches!(body.content, Some(Content::Text(_)));
            assert_eq!(policy::fallback(&body).is_empty(), text);
        }
    }
    let name = match &frame.request {
        Some(Request::Send(r)) => &r.conversation_id,
        Some(Request::Pull(r)) => &r.conversation_id,
        Some(Request::MarkRead(r)) => &r.conversation_id,
        Some(Request::ListConversations(r)) => &r.cursor,
        _ => return,
    };
    if let Ok(conversation) = name.parse::<ConversationId>() {
        assert_eq!(&conversation.to_string(), name);
    }
});
