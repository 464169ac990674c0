//! [`RedisTier::inventory`](super::RedisTier::inventory): what the server holds under the
//! tier's prefix, by namespace (for `larder cache stats`).

use super::{map_err, Backend, RedisTier, VERIFY_TIMEOUT};
use crate::tier::TierError;

impl RedisTier {
    /// What the server holds under this tier's prefix, by namespace: `SCAN` over
    /// `<prefix>{#*` and `STRLEN` of each value. On a cluster, every node named in the URL is
    /// scanned (name every primary to count them all). Each `SCAN` batch is one bounded call.
    pub async fn inventory(&self) -> Result<crate::tier::Inventory, TierError> {
        let clients: Vec<&redis::Client> = match &self.backend {
            Backend::Single { client, .. } => vec![&**client],
            Backend::Cluster { nodes, .. } => nodes.iter().collect(),
        };
        let pattern = format!("{}{{#*", self.options.prefix);
        let head = format!("{}{{#", self.options.prefix);
        let bound = self.options.timeout.max(VERIFY_TIMEOUT);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(bound))
            .set_response_timeout(Some(bound));
        let mut inv = crate::tier::Inventory::default();
        for client in clients {
            let mut conn =
                tokio::time::timeout(bound, client.get_multiplexed_async_connection_with_config(&config))
                    .await
                    .map_err(|_| TierError::Timeout)?
                    .map_err(map_err)?;
            let mut cursor: u64 = 0;
            loop {
                let (next, names): (u64, Vec<String>) = tokio::time::timeout(
                    bound,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn),
                )
                .await
                .map_err(|_| TierError::Timeout)?
                .map_err(map_err)?;
                let mut pipe = redis::pipe();
                let mut values = Vec::new();
                for name in names {
                    if name.ends_with("}:lease") {
                        inv.leases += 1;
                    } else if let Some(text) = name.strip_prefix(&head).and_then(|t| t.strip_suffix('}')) {
                        pipe.cmd("STRLEN").arg(&name);
                        values.push(text.to_owned());
                    }
                }
                if !values.is_empty() {
                    let lens: Vec<u64> = tokio::time::timeout(bound, pipe.query_async(&mut conn))
                        .await
                        .map_err(|_| TierError::Timeout)?
                        .map_err(map_err)?;
                    for (text, len) in values.iter().zip(lens) {
                        inv.add(text, len, false);
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(inv)
    }
}
