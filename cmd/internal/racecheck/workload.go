package racecheck

import (
	"fmt"
	"math/rand/v2"
)

// counterNames is how many names the counter workload's skewed
// distribution draws from, besides the hot key.
const counterNames = 100

// ops returns the keys worker w (numbered across all processes) works on
// in round r, in order, and whether they are increments. It depends only on
// its arguments, so every process computes the same plan.
func ops(workload string, seed int64, w, r int) (keys []string, incr bool) {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(w)<<32|uint64(r)))
	switch workload {
	case Storm:
		// One brand-new key per round, for everyone at once: the
		// stampede after a cache miss or a popular new tag.
		return []string{fmt.Sprintf("storm-%d", r)}, false
	case Keys:
		// The same new keys for everyone, each worker in its own order:
		// collisions happen wherever two orders meet.
		keys = make([]string, keysPerRound)
		for i, k := range rng.Perm(keysPerRound) {
			keys[i] = fmt.Sprintf("k%d-%04d", r, k)
		}
		return keys, false
	default:
		// Half the increments go to one hot key (a like counter on the
		// post of the day), the rest to names drawn from a Zipf
		// distribution, so some names are contended and most are not.
		z := rand.NewZipf(rng, 1.3, 1, counterNames-1)
		keys = make([]string, counterOpsPerRound)
		for i := range keys {
			if rng.IntN(2) == 0 {
				keys[i] = "hot"
			} else {
				keys[i] = fmt.Sprintf("n%02d", z.Uint64())
			}
		}
		return keys, true
	}
}
