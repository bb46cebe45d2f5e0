package bridge

// Test helpers shared with the external test package bridge_test.
var (
	PingFile = pingFile
	WriteSet = writeSet
)
