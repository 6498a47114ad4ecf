//! grayguard sidecar.
