// Package num holds the rounding the checks share, so that a percentage
// reads the same in the resources, processes and network results.
package num
