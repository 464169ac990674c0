//! larder-testkit (being built).
