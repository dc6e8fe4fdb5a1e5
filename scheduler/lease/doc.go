// Package lease lets one of several schedulers act at a time: the holder
// owns a key in a JetStream key-value bucket whose entries expire after the
// lease's TTL, renews it with its revision every TTL/3, and stops acting
// the moment a renewal fails.
package lease
