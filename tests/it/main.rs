//! The server's story, told against a real server on port 0 with a fresh data
//! dir, real HTTP and real WebSocket clients over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod budget;
mod calls;
mod chat;
mod cli;
mod config;
mod durability;
mod faults;
mod groups;
mod helpers;
mod invites;
mod kinds;
mod limits;
mod load;
mod media;
mod nearby;
mod openapi;
mod presence;
mod profiles;
mod realname;
mod reconcile;
mod roles;
mod security;
mod social;
mod turn;
mod views;
mod websocket;
