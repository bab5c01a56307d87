//! The HTTP API, over real HTTP against the real server on port 0, on both backends.

mod audit;
mod auth;
mod bad_input;
mod documents;
mod fanout;
mod operations;
mod redis;
mod retention;
mod search;
mod token;
