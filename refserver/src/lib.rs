//! refserver
