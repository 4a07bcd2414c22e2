//! The request side of HTTP, shared by every route: who the client is ([`client_addr`]), who the
//! caller is ([`auth`]), reading bodies within limits ([`body`]), throttling failed admin
//! authentications ([`throttle`]), the access log ([`access`]), and every refusal rendered in the
//! route's protocol shape ([`refusal`]). No route is defined here: the router is `routes`.

pub mod access;
pub mod auth;
pub mod body;
pub mod client_addr;
pub mod refusal;
pub mod throttle;

pub use client_addr::PeerAddr;
