#!/usr/bin/perl
# PROTOTYPE, benchmark only (scripts/bench/virsh-start.js, configuration "lockagent-perl"): the
# lockagent qemu hook's client side without starting node. It does what `node hook.js` does
# (src/libvirt/hook.ts runHook) for the operations the installed hook forwards, over the same
# control socket and protocol, so the cost of a node start per hook call can be measured against
# the cost of the agent's work. perl and IO::Socket::UNIX are in perl-base (Essential in Debian).
#
#   fast-hook.pl <domain> <operation> <sub-operation> <extra>   (domain XML on stdin)
#   socket: $LOCKAGENT_SOCKET
use strict;
use warnings;
use IO::Socket::UNIX;

my ($name, $op, $sub) = @ARGV;
local $/;
my $xml = <STDIN> // '';
my %ops = ('prepare:begin' => 'domain_prepare', 'migrate:begin' => 'domain_migrate',
           'stopped:end' => 'domain_release', 'release:end' => 'domain_release',
           'reconnect:begin' => 'domain_reconnect');
my $req = $ops{"$op:$sub"} or exit 0;
my $gate = ($req eq 'domain_prepare' || $req eq 'domain_migrate');

sub jstr {
  my $s = shift;
  $s =~ s/(["\\])/\\$1/g;
  $s =~ s/\n/\\n/g; $s =~ s/\r/\\r/g; $s =~ s/\t/\\t/g;
  $s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord($1))/ge;
  return "\"$s\"";
}
sub fail {
  my $msg = shift;
  print STDERR "lockagent: $msg\n";
  exit($gate ? 1 : 0);
}

my $sockpath = $ENV{LOCKAGENT_SOCKET} || '/run/lockagent/lockagent.sock';
my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $sockpath)
  or fail("lockagent is not running (no listener on $sockpath): $!");
my $extra = $req eq 'domain_prepare' ? ',"timeoutMs":85000' : '';
print $sock "{\"v\":1,\"id\":1,\"op\":\"$req\",\"xml\":" . jstr($xml) . "$extra}\n";
$sock->flush;
local $/ = "\n";
my $line = <$sock>;
fail('lockagent closed the connection without answering') unless defined $line;
exit 0 if $line =~ /"ok":true/;
my ($m) = $line =~ /"message":"((?:[^"\\]|\\.)*)"/;
$m //= 'refused';
$m =~ s/\\u([0-9a-fA-F]{4})/chr(hex($1))/ge;
$m =~ s/\\n/\n/g; $m =~ s/\\(["\\\/])/$1/g;
fail($m);
