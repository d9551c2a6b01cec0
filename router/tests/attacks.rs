//! Attacks on the router, performed with raw TCP clients on loopback
//! against a real router and real upstream apps the tests run, each shown
//! refused. Every test here failed against the router before issue 11
//! (no deadlines, no caps, no body limit, forwarding headers appended to,
//! malformed bodies blamed on the app, abandoned requests never logged,
//! the Host header winning over an absolute-form target, no upstream
//! timeout, pages without the marker) — but two guards: 500 headers were
//! already refused by hyper's own cap of 100
//! (`floods::too_many_headers_are_refused_with_431`), and a connection
//! waiting for a slow app must not be taken for an idle one
//! (`deadlines::a_keep_alive_connection_in_use_is_not_reaped`).
//!
//! Deadlines are set short here; the tests assert what happened (closed,
//! status, counters, records), never how long it took.
//!
//! | attack | module |
//! | --- | --- |
//! | silent socket, slowloris head, partial head on a kept-alive connection, idle keep-alive, quiet WebSocket, stalled upload, app that never answers | `deadlines` |
//! | header flood (count and size), connection flood per client and overall | `floods` |
//! | body over the limit (announced, chunked), malformed chunked body, client walking away | `bodies` |
//! | forged forwarding headers, absolute-form target vs Host, app passing for the router, domain hijack | `spoofing` |

mod support;

#[path = "attacks/bodies.rs"]
mod bodies;
#[path = "attacks/deadlines.rs"]
mod deadlines;
#[path = "attacks/floods.rs"]
mod floods;
#[path = "attacks/spoofing.rs"]
mod spoofing;

/// The deadline the tests give the router where they wait for one.
const SHORT: std::time::Duration = std::time::Duration::from_millis(400);
/// A deadline no test reaches: only the deadline under test can act.
const NEVER: std::time::Duration = std::time::Duration::from_secs(3600);
