//! Browser tickets (`account/src/tickets.rs`): redeeming whatever string a
//! browser sends, among tickets issued and redeemed over time, checked
//! against a model of what a single-use ticket that lives one fixed lifetime
//! must do.
//!
//! A string redeems only if it is a ticket issued, not yet redeemed and not
//! expired, and then to that ticket's claims. Tickets kept never outnumber
//! those issued within one lifetime of the last issue.

#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use superapp_account::tickets::Tickets;
use superapp_account::token::{Claims, token_hash};
use superapp_proto::UserId;

/// One lifetime for every ticket, as the server issues them.
const TTL: i64 = 30_000;

#[derive(Debug, Arbitrary)]
enum Op {
    Issue {
        ticket: String,
        user: u64,
    },
    Redeem {
        ticket: String,
    },
    /// Redeems the n-th ticket issued, so that real tickets are tried often.
    RedeemIssued {
        n: u8,
    },
    Wait {
        ms: u16,
    },
}

struct Issued {
    claims: Claims,
    expires: i64,
    spent: bool,
}

fuzz_target!(|ops: Vec<Op>| {
    let tickets = Tickets::default();
    let mut model: HashMap<String, Issued> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut now: i64 = 0;
    for op in ops {
        let ticket = match op {
            Op::Issue { ticket, user } => {
                // Tickets are 256 random bits: none is issued twice.
                if model.contains_key(&ticket) {
                    continue;
                }
                let claims = Claims {
                    sub: UserId(user),
                    sid: user,
                    exp: i64::MAX,
                };
                tickets.issue(token_hash(&ticket), claims, now + TTL, now);
                let issued = Issued {
                    claims,
                    expires: now + TTL,
                    spent: false,
                };
                model.insert(ticket.clone(), issued);
                order.push(ticket);
                let recent = model.values().filter(|t| t.expires > now).count();
                assert!(tickets.len() <= recent, "{} kept", tickets.len());
                continue;
            }
            Op::Wait { ms } => {
                now += i64::from(ms);
                continue;
            }
            Op::Redeem { ticket } => ticket,
            Op::RedeemIssued { n } => match order.get(usize::from(n)) {
                Some(ticket) => ticket.clone(),
                None => continue,
            },
        };
        let expected = match model.get_mut(&ticket) {
            Some(issued) if !issued.spent && issued.expires > now => {
                issued.spent = true;
                Some(issued.claims)
            }
            Some(issued) => {
                issued.spent = true;
                None
            }
            None => None,
        };
        assert_eq!(tickets.redeem(&token_hash(&ticket), now), expected);
    }
});
