//! The wallet's integration tests: the bank test, which runs the ledger in
//! a child process and kills it.

mod bank;
