//! larder-envelope (being built).
