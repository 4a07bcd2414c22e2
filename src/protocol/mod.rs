//! Wire facts of the APIs subrelay speaks: request inspection, body normalisation, SSE framing,
//! usage extraction, error shapes. Pure functions over bytes: nothing here does I/O.

pub mod errors;
pub mod responses;
pub mod sse;
