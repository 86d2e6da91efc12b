//! Placeholder: this driver is built in a later issue (see the README's roadmap).
#![forbid(unsafe_code)]
