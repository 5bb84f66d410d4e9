//! Integration tests: the real gateway, a real upstream, real Postgres and Redis.
//! One binary, so Pingora and friends are linked once.

mod admin;
mod embedded;
mod front_door;
mod harness;
mod infra;

mod keys_auth;
mod keys_cli;
mod keys_sync;
mod leak;
mod owners;
mod production;
mod proxy;
mod ratelimit;
mod usage;
mod webhooks;
