//! The subcommands other than `serve`.

pub mod bench;
pub mod events;
pub mod verify;
