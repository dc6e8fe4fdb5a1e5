// Package checktest holds what the checks' tests share: running a check's
// Watch until the test ends and waiting for its triggers. Only tests import
// it.
package checktest
