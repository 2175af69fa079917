//! The guest channel and the wire format it speaks: framed requests to the in-guest agent over
//! the virtio-serial socket, every read with a deadline and every length bounded.

pub mod channel;
pub mod wire;
pub mod wire_def;

pub use channel::{Channel, ChannelTimes, GuestError};
