"""What a row of a partition's request index is: a request to send, or a row whose earlier answer
a rebuild kept. Its own module because the requests stage writes these and the use case's
estimate reads them: neither imports the other for it."""

PENDING = "pending"  # the row is a request in one of the partition's shards
CARRIED = "carried"  # the row kept its answer from an earlier harvest; nothing is sent
