//! larder-cache (being built).
