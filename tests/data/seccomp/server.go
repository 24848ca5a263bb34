// A tiny Go TCP server for tests/test_seccomp.py: built static (CGO_ENABLED=0).
//
// It listens the way most Go services do, net.Listen("tcp", ":PORT"): one
// dual-stack [::] socket where the kernel has IPv6, IPv4 0.0.0.0 where it has
// not. Each connection gets "hello". It prints "@@ready" once listening.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 3 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: server serve PORT")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", ":"+os.Args[2])
	if err != nil {
		fmt.Println("@@listen: " + err.Error())
		os.Exit(1)
	}
	fmt.Println("@@listen: ok " + ln.Addr().String())
	fmt.Println("@@ready")
	for {
		conn, err := ln.Accept()
		if err != nil {
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			_, _ = c.Write([]byte("hello\n"))
		}(conn)
	}
}
