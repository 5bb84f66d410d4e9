//! keygate: an API-key gateway on Pingora.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
pub mod credits;
pub mod gateway;
pub mod keys;
pub mod leak;
pub mod metrics;
pub mod outbound;
pub mod outcome;
pub mod owners;
pub mod proxy;
pub mod ratelimit;
pub mod routes;
pub mod secrets;
pub mod service;
pub mod store;

pub use gateway::{BuildOptions, Gateway, RunningGateway, Stop};
pub mod audit;
pub mod cli;
pub mod ids;
pub mod telemetry;
pub mod tls;
pub mod usage;
pub mod webhooks;
