//! deltasync
