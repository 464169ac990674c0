//! redis-server and Redis Cluster (being built).
