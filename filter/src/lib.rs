//! grayguard filter.
