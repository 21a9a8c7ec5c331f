package csidriver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net"
	"os"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// SocketPath accepts an endpoint as the sidecars spell it ("unix:///run/csi.sock") or a bare path.
func SocketPath(endpoint string) (string, error) {
	path := strings.TrimPrefix(endpoint, "unix://")
	if path == "" || strings.Contains(path, "://") {
		return "", fmt.Errorf("endpoint %q: want unix:///path/to/socket or a path", endpoint)
	}
	return path, nil
}

// Serve serves d's CSI services on a unix socket at endpoint until ctx ends. A stale socket from
// an earlier run is removed first. logf, when not nil, receives one line per call.
func (d *Driver) Serve(ctx context.Context, endpoint string, logf func(format string, args ...any)) error {
	path, err := SocketPath(endpoint)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	var opts []grpc.ServerOption
	if logf != nil {
		opts = append(opts, grpc.UnaryInterceptor(logCalls(logf)))
	}
	srv := grpc.NewServer(opts...)
	csi.RegisterIdentityServer(srv, d)
	csi.RegisterControllerServer(srv, d)
	csi.RegisterNodeServer(srv, d)

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		srv.GracefulStop()
	}()
	err = srv.Serve(lis)
	<-stopped
	_ = os.Remove(path)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// logCalls logs every call with its outcome; probes are frequent and say nothing, so they are left out.
func logCalls(logf func(string, ...any)) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
		if method == "Probe" {
			return resp, err
		}
		if err != nil {
			s := status.Convert(err)
			logf("%s: %s: %s", method, s.Code(), s.Message())
		} else {
			logf("%s: OK", method)
		}
		return resp, err
	}
}

// StdLogf logs through the standard logger.
func StdLogf(format string, args ...any) { log.Printf(format, args...) }
