package bridge

// NATS test helpers shared with the external test package bridge_test.
var StartNATS = startNATS

// NATSServer is natsServer for bridge_test.
type NATSServer = natsServer
