// Package depcheck holds a test of the project's import direction (see
// the architecture notes): lang imports nothing of fgimg's, the planner
// never reaches the cache, the sandbox or the engine, and nothing imports
// the command.
package depcheck
