//! Unit tests: hand-written requests against a real repository.
