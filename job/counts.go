package job

// Counts are one campaign's jobs by state, summed over the campaign's lanes (one per sender). A
// campaign is finished when Completed + Dead + Cancelled == Enqueued.
type Counts struct {
	Campaign  string `json:"campaign"`
	Enqueued  int64  `json:"enqueued"`
	Pending   int64  `json:"pending"` // waiting in the queue (pending or scheduled)
	Active    int64  `json:"active"`
	Retry     int64  `json:"retry"`
	Completed int64  `json:"completed"` // sent: Kaleyra accepted the message
	Dead      int64  `json:"dead"`
	// Cancelled counts jobs that left the queues without being sent or dead-lettered: removed by
	// a cancel, refused after it, or deleted in asynqmon. They are never sent.
	Cancelled int64 `json:"cancelled"`
	Retries   int64 `json:"retries"`  // failed attempts that were retried
	Redriven  int64 `json:"redriven"` // dead letters put back in the queue
	// DeadCodes counts the dead letters by code (Kaleyra's, or wabulk's own such as INVALID_PAYLOAD).
	DeadCodes map[string]int64 `json:"dead_by_code,omitempty"`
	// What WhatsApp did with the completed messages, from Kaleyra's status callbacks. Delivered
	// counts messages that reached the device (read ones too, even when no "delivered" came);
	// Read those the user opened; Failed those WhatsApp refused (by Meta error code in
	// FailedCodes); NotSent those Kaleyra never passed on. Completed minus these four (Read is
	// within Delivered) have no verdict yet.
	Delivered   int64            `json:"delivered"`
	Read        int64            `json:"read"`
	Failed      int64            `json:"failed"`
	NotSent     int64            `json:"not_sent"`
	FailedCodes map[string]int64 `json:"failed_by_code,omitempty"`
	// Suppressed counts recipients the enqueue skipped because they are on the suppression list.
	Suppressed int64 `json:"suppressed"`
}
