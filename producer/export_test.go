package producer

// EnqueueBatch is enqueueBatch, for tests that bound what one Redis call can hold.
const EnqueueBatch = enqueueBatch
