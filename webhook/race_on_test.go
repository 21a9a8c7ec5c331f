//go:build race

package webhook

// raceEnabled: the race detector drops sync.Pool items at random, so the
// allocation counts are not those of a normal build.
const raceEnabled = true
