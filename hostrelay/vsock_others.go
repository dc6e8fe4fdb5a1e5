//go:build !linux

package hostrelay

import "errors"

func listenVsock(uint32) (vsockListener, error) {
	return nil, errors.New("vsock is supported on Linux hosts only")
}
