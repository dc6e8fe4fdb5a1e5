package sim

import "math"

// PowerModel gives a host's power draw in watts at 0 %, 10 %, … 100 % CPU
// utilisation, as SPECpower_ssj2008 publishes it; between the points the
// draw is interpolated linearly.
type PowerModel [11]float64

// The two servers of Beloglazov and Buyya's set-up, from their SPECpower
// results (idle to full load).
var (
	HPProLiantG4 = PowerModel{86, 89.4, 92.6, 96, 99.5, 102, 106, 108, 112, 114, 117}
	HPProLiantG5 = PowerModel{93.7, 97, 101, 105, 110, 116, 121, 125, 129, 133, 135}
)

// Watts returns the draw at utilisation u in [0, 1]; u outside is clamped.
func (m *PowerModel) Watts(u float64) float64 {
	switch {
	case u <= 0:
		return m[0]
	case u >= 1:
		return m[10]
	}
	lo := math.Floor(u * 10)
	hi := math.Ceil(u * 10)
	if lo == hi {
		return m[int(lo)]
	}
	step := (m[int(hi)] - m[int(lo)]) / 10
	return m[int(lo)] + step*(u-lo/10)*100
}

// energy is CloudSim's linear interpolation of a host's energy in joules
// over dt seconds while its utilisation went from u0 to u1. A host that was
// idle at the start of the interval is taken to be switched off.
func (m *PowerModel) energy(u0, u1, dt float64) float64 {
	if u0 == 0 {
		return 0
	}
	p0, p1 := m.Watts(u0), m.Watts(u1)
	return (p0 + (p1-p0)/2) * dt
}
