//! The HTTP API, over real HTTP against the real server on port 0, on both backends.

mod audit;
mod auth;
mod bad_input;
mod documents;
mod operations;
mod redis;
mod search;
mod token;
