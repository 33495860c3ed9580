import ArgumentParser
import FastCGI
import FoundationEssentials
import Glibc

// Started by a web server or process manager with no arguments: serve, don't print usage.
//  - a listening socket on fd 0 (spawn-fcgi, Apache mod_fcgid) or from systemd (LISTEN_FDS, fd 3):
//    FastCGI on it;
//  - a CGI environment: answer the one request.
if CommandLine.arguments.count == 1 {
    if FastCGIServer.systemdSocket != nil || FastCGIServer.isInheritedSocket {
        ServeCommand.runInherited()
    } else if CGI.isInvocation {
        ServeCommand.runCGI()
    }
}
SCEPFCGI.main()
