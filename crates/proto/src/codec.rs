//! Length-delimited JSON frames with a hard size cap.

use std::io;
use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec, LengthDelimitedCodecError};

use crate::MAX_FRAME_LEN;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of more than {MAX_FRAME_LEN} bytes refused")]
    TooLarge,
    #[error("frame is not a valid message: {0}")]
    Malformed(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Encodes `Out` and decodes `In`, each as one JSON document per frame.
pub struct JsonFrames<In, Out> {
    inner: LengthDelimitedCodec,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> Default for JsonFrames<In, Out> {
    fn default() -> Self {
        JsonFrames {
            inner: LengthDelimitedCodec::builder()
                .length_field_length(4)
                .big_endian()
                .max_frame_length(MAX_FRAME_LEN)
                .new_codec(),
            _types: PhantomData,
        }
    }
}

fn map_inner(e: io::Error) -> FrameError {
    let too_large = e
        .get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
    if too_large {
        FrameError::TooLarge
    } else {
        FrameError::Io(e)
    }
}

impl<In: DeserializeOwned, Out> Decoder for JsonFrames<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        match self.inner.decode(src).map_err(map_inner)? {
            None => Ok(None),
            Some(frame) => serde_json::from_slice(&frame)
                .map(Some)
                .map_err(|e| FrameError::Malformed(e.to_string())),
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for JsonFrames<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        let body = serde_json::to_vec(&item).map_err(|e| FrameError::Malformed(e.to_string()))?;
        if body.len() > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge);
        }
        self.inner.encode(Bytes::from(body), dst).map_err(map_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMessage, Request};

    type ServerSide = JsonFrames<ClientMessage, ClientMessage>;

    #[test]
    fn a_message_survives_the_codec() {
        let mut codec = ServerSide::default();
        let mut buf = BytesMut::new();
        let msg = ClientMessage::Request {
            id: 1,
            request: Request::Status,
        };
        codec.encode(msg.clone(), &mut buf).unwrap();
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut codec = ServerSide::default();
        let mut full = BytesMut::new();
        codec
            .encode(
                ClientMessage::Request {
                    id: 1,
                    request: Request::Status,
                },
                &mut full,
            )
            .unwrap();
        let mut part = full.split_to(full.len() - 1);
        assert!(codec.decode(&mut part).unwrap().is_none());
        part.extend_from_slice(&full);
        assert!(codec.decode(&mut part).unwrap().is_some());
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header_alone() {
        let mut codec = ServerSide::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes());
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::TooLarge)));
    }

    #[test]
    fn garbage_frame_is_malformed() {
        let mut codec = ServerSide::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&5u32.to_be_bytes());
        buf.extend_from_slice(b"\xff\x00abc");
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Malformed(_))
        ));
    }
}
