package num

import "math"

// Pct is part of whole in percent, clamped to 0-100 and rounded to one
// decimal; 0 when whole is not positive.
func Pct(part, whole float64) float64 {
	if whole <= 0 {
		return 0
	}
	return Round1(math.Min(100, math.Max(0, part/whole*100)))
}

// Round1 rounds v to one decimal, the precision the checks report.
func Round1(v float64) float64 { return math.Round(v*10) / 10 }
