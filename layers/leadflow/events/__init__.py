"""Events: the immutable interaction records (model), the events table and idempotency marks
(store), and the stream contract that hands stored events to the stream consumers (streams)."""
