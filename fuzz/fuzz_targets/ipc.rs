//! The helper's front door: raw bytes from a socket through the frame decoder, then every
//! check a connect request gets before the helper acts on it (field validation, the signed
//! bundle's verification, the tunnel it describes).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use underpass_proto::codec::JsonFrames;
use underpass_proto::{ClientMessage, Request, ServerMessage};

fuzz_target!(|data: &[u8]| {
    let mut codec = JsonFrames::<ClientMessage, ServerMessage>::default();
    let mut buf = BytesMut::from(data);
    // A connection's worth of frames; the decoder must never panic or loop.
    for _ in 0..64 {
        let Ok(Some(msg)) = codec.decode(&mut buf) else {
            break;
        };
        let ClientMessage::Request {
            request: Request::Connect {
                config,
                alternatives,
            },
            ..
        } = msg
        else {
            continue;
        };
        if underpass_proto::validate_choice(&config, &alternatives).is_err() {
            continue;
        }
        let Some(signed) = &config.signed else {
            continue;
        };
        if let Ok(b) = underpass_trust::Bundle::open("fuzz", signed.bundle.as_bytes()) {
            if let Some(i) = b.server_index(&signed.server) {
                let _ = b.server_tunnel(i, config.private_key.clone());
            }
        }
    }
});
