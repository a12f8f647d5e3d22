# The lease worker (src/worker.c), which renews the Valkey locks of live
# leaders and probes a Valkey that failed.  It sleeps until something is
# due, and backends wake it:
#
#   1. idle, it does not wake (it used to every 50 ms);
#   2. a lease added while the worker waits for a Valkey that hangs (its
#      probe of a second Valkey, whose outage a session just saw) is renewed
#      all the same: the wake-up is not lost in that wait, and the lock
#      outlives several lock_timeouts while its leader runs;
#   3. a lock_timeout of 2 ms does not make it spin: renewals are at most
#      every 50 ms;
#   4. the worker terminated while a leader runs is restarted within a
#      second or so, soon enough that the leader's lock (lock_timeout 3 s)
#      does not expire.
#
# One server, two redis-servers: V1, where the leaders' locks are, and V2,
# which hangs (SIGSTOP: the kernel still accepts connections, nothing
# answers).  The leaders wait at a gate (an advisory lock), pg_locks says
# when; the only fixed waits are the windows in which something must not
# happen, or must go on happening.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StampedeTest qw(new_node call_sql close_gate open_gate gated_query leader_at_gate
  call_result);
use Test::More;
use Time::HiRes qw(time sleep);

my $GATE = 909;
my $v1 = StampedeTest::Valkey->new;
my $v2 = StampedeTest::Valkey->new;

# The worker's commands may wait 5 s for a reply: long enough for a lease to
# be added while it waits for V2.
my $node = new_node('worker', qq{
stampede.valkey_url = '@{[ $v1->url ]}'
stampede.valkey_timeout = '5s'
stampede.backoff_base = '20ms'
stampede.backoff_max = '100ms'
});

# The worker's pid: a child of the postmaster by its process title (it
# connects to no database, so pg_stat_activity does not list it).
sub worker_pid
{
	my $postmaster = $node->{_pid};
	foreach my $dir (glob('/proc/[0-9]*'))
	{
		open(my $fh, '<', "$dir/stat") or next;
		my $stat = <$fh> // '';
		close $fh;
		my ($ppid) = $stat =~ /^\d+ \(.*\) \S (\d+)/;
		next unless defined $ppid && $ppid == $postmaster;
		open($fh, '<', "$dir/cmdline") or next;
		my $cmdline = <$fh> // '';
		close $fh;
		return ($dir =~ /(\d+)$/)[0] if $cmdline =~ /stampede lease renewer/;
	}
	return undef;
}

my $worker;
ok(wait_for(sub { $worker = worker_pid() }), 'the lease worker runs');

# How often the worker has gone to sleep and woken since it started.
sub wakeups
{
	open(my $fh, '<', "/proc/$worker/status") or die "no /proc/$worker/status: $!";
	my ($n) = join('', <$fh>) =~ /^voluntary_ctxt_switches:\s+(\d+)/m;
	close $fh;
	return $n;
}

# The TCP connections process PID has to 127.0.0.1:PORT.
sub connections_to
{
	my ($pid, $port) = @_;
	my %inodes;
	foreach my $fd (glob("/proc/$pid/fd/*"))
	{
		my $target = readlink($fd) // '';
		$inodes{$1} = 1 if $target =~ /^socket:\[(\d+)\]$/;
	}
	open(my $fh, '<', '/proc/net/tcp') or die "no /proc/net/tcp: $!";
	my $n = 0;
	while (<$fh>)
	{
		my @f = split;
		next unless @f > 9 && $f[2] =~ /^0100007F:([0-9A-F]{4})$/;
		$n++ if hex($1) == $port && $f[3] eq '01' && $inodes{ $f[9] };
	}
	close $fh;
	return $n;
}

sub evalsha_calls
{
	my ($calls) = $v1->cli('INFO', 'commandstats') =~ /cmdstat_evalsha:calls=(\d+)/;
	return $calls // 0;
}

sub lock_ttls { return map { $v1->cli('PTTL', $_) } $v1->names('stampede:*:l'); }
sub locks_in_v1 { my @names = $v1->names('stampede:*:l'); return scalar(@names); }

# Watch the leader's lock in V1 every 100 ms for SECONDS: how many looks,
# and the lowest PTTL seen (-2 when there was no lock at all: it was gone).
sub watch_lock
{
	my ($seconds) = @_;
	my @ttls;
	my $until = time + $seconds;
	while (time < $until)
	{
		my @now = lock_ttls();
		push @ttls, @now ? @now : (-2);
		sleep(0.1);
	}
	my ($lowest) = sort { $a <=> $b } @ttls;
	return (scalar(@ttls), $lowest // -2);
}

# ---- 1. idle, it sleeps ----
{
	my $before = wakeups();
	sleep(1);
	my $woke = wakeups() - $before;
	ok($woke <= 2, "idle, the worker woke $woke times in a second (at most 2)");
}

# ---- 2. a lease added while the worker waits for a hung Valkey ----
{
	$v2->hang;
	# A session sees V2 fail: an outage begins, the worker is woken to probe
	# V2, and waits for its reply (for up to 5 s: stampede.valkey_timeout).
	$node->psql('postgres',
		"SET stampede.valkey_url = '@{[ $v2->url ]}'; SET stampede.valkey_timeout = '100ms'; "
		  . 'SELECT * FROM stampede_status()');
	ok(wait_for(sub { connections_to($worker, $v2->port) > 0 }),
		'the worker is connected to the hung Valkey, waiting for its reply');

	# A leader takes its lock in V1 meanwhile: its lease's wake-up comes
	# while the worker waits.
	my $gate = close_gate($node, $GATE);
	my ($leader) = leader_at_gate($node, $GATE, call_sql('worker:long', gated_query($GATE)),
		"stampede.lock_timeout = '1s'");
	ok(wait_for(sub { locks_in_v1() == 1 }), 'the leader holds its lock in V1');

	# V2 answers: the worker's probe succeeds and the outage ends.
	$v2->resume;

	# For three lock_timeouts, the lock stays: it is renewed.
	my ($looks, $lowest) = watch_lock(3);
	ok($looks >= 10 && $lowest > 0,
		"the lock outlives three lock_timeouts while its leader runs ($looks looks, lowest PTTL $lowest)");

	open_gate($gate);
	my $r = call_result($leader);
	like($r->{out}, qr/^\d+$/, 'the leader returns its rows');
	$leader->quit;
	ok(wait_for(sub { locks_in_v1() == 0 }), 'and lets go of its lock');
}

# ---- 3. a 2 ms lock_timeout: no spinning ----
{
	my $gate = close_gate($node, $GATE);
	my ($leader) = leader_at_gate($node, $GATE, call_sql('worker:tiny', gated_query($GATE)),
		"stampede.lock_timeout = '2ms'");
	my $calls = evalsha_calls();
	my $before = wakeups();
	sleep(1);
	my $renewals = evalsha_calls() - $calls;
	my $woke = wakeups() - $before;
	ok($renewals <= 30, "lock_timeout 2ms: $renewals renewals in a second (at most 30)");
	ok($woke <= 100, "lock_timeout 2ms: the worker woke $woke times in a second (at most 100)");
	open_gate($gate);
	my $r = call_result($leader);
	like($r->{out}, qr/^\d+$/, 'the leader returns its rows');
	$leader->quit;
}

# ---- 4. the worker terminated while a leader runs ----
{
	my $gate = close_gate($node, $GATE);
	my ($leader) = leader_at_gate($node, $GATE, call_sql('worker:restart', gated_query($GATE)),
		"stampede.lock_timeout = '3s'");
	ok(wait_for(sub { locks_in_v1() == 1 }), 'restart: the leader holds its lock in V1');
	my $old = $worker;
	kill('TERM', $old);
	ok(wait_for(sub { ($worker = worker_pid() // 0) && $worker != $old }),
		'restart: a new worker runs');
	my ($looks, $lowest) = watch_lock(6);
	ok($looks >= 20 && $lowest > 0,
		"restart: the lock outlives two lock_timeouts across the restart ($looks looks, lowest PTTL $lowest)");
	open_gate($gate);
	my $r = call_result($leader);
	like($r->{out}, qr/^\d+$/, 'restart: the leader returns its rows');
	$leader->quit;
}

# ---- and idle again ----
{
	ok(wait_for(sub { locks_in_v1() == 0 }), 'no lock is left in V1');
	my $before = wakeups();
	sleep(1);
	my $woke = wakeups() - $before;
	ok($woke <= 2, "idle again, the worker woke $woke times in a second (at most 2)");
}

# Wait (up to 30 s) until CHECK says yes.
sub wait_for
{
	my ($check) = @_;
	my $until = time + 30;
	while (time < $until)
	{
		return 1 if $check->();
		sleep(0.05);
	}
	return 0;
}

$node->stop;
done_testing();
