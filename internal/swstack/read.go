package swstack

import "errors"

// Read reads the software stack of the root filesystem at root.
//
// Placeholder until the swstack work lands (session of 2026-12-02): the
// signature is the contract, the body is replaced.
func Read(root string) (*Stack, error) {
	return nil, errors.New("swstack: reading the software stack is not implemented yet")
}
