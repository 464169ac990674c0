//! moto's KMS server (being built).
