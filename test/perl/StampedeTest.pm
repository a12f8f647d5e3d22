# What the TAP tests of test/t share: a redis-server of their own (Valkey
# speaks its protocol), the servers, and sessions that run a call in the
# background while the test orders them by locks and counters.
#
#   my $valkey = StampedeTest::Valkey->new(password => 'p', debug => 1);
#   $valkey->cli('PING'); $valkey->command('GET', $name);  # text / binary-safe
#   $valkey->stop; $valkey->start;          # the same port again
#   $valkey->hang; $valkey->resume;         # SIGSTOP: a Valkey that never answers
#
#   my ($session, $pid) = start_call($node, $sql, "stampede.max_wait = '1s'");
#   my $r = call_result($session);          # {out, err, code, ended}
#
# Each redis-server started here is stopped when the test ends, whatever
# happens (the PostgreSQL servers stop themselves).
package StampedeTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

our @EXPORT_OK = qw(new_node primary_and_replica stat_of call_sql start_call
  wait_output call_result close_gate open_gate gated_query leader_at_gate
  gate_waiters waiting_on stampede_locks);

# The class of stampede's advisory locks: their objsubid in pg_locks.
our $LOCK_CLASS = 21332;

# new_node(NAME, CONF, preload => 0|1 (default 1), allows_streaming => ...):
# a cluster of its own, started, with CONF appended to postgresql.conf and
# the extension created (in database postgres).
sub new_node
{
	my ($name, $conf, %opts) = @_;
	my $preload = $opts{preload} // 1;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opts{allows_streaming} // 0);
	$node->append_conf('postgresql.conf',
		($preload ? "shared_preload_libraries = 'stampede'\n" : '') . ($conf // ''));
	$node->start;
	$node->safe_psql('postgres',
		"SET client_min_messages = warning;\nCREATE EXTENSION stampede;\n"
		  . ($opts{setup} // ''));
	return $node;
}

# primary_and_replica(CONF, SETUP): a primary with stampede preloaded, CONF in
# its postgresql.conf and SETUP run on it, and its streaming replica (made
# from a base backup taken after SETUP: it has the same stampede_secret),
# caught up.
sub primary_and_replica
{
	my ($conf, $setup) = @_;
	my $primary = new_node('primary', $conf, allows_streaming => 1, setup => $setup);
	$primary->backup('base');
	my $replica = PostgreSQL::Test::Cluster->new('replica');
	$replica->init_from_backup($primary, 'base', has_streaming => 1);
	$replica->start;
	$primary->wait_for_catchup($replica);
	return ($primary, $replica);
}

sub stat_of
{
	my ($node, $column) = @_;
	return $node->safe_psql('postgres', "SELECT $column FROM stampede_stats");
}

# A call of stampede_cached for KEY and QUERY, its rows typed COLUMNS.
sub call_sql
{
	my ($key, $query, $columns) = @_;
	$columns //= 'run bigint';
	return "SELECT * FROM stampede_cached('$key', \$q\$$query\$q\$, '5 minutes') "
	  . "AS t($columns)";
}

my $DONE = 'stampede-test: call done';

# start_call(NODE, SQL, SETTING...): a session that runs SQL in the
# background, after SET SETTING for each; returns the session and its pid.
# The session's errors come with their SQLSTATE (VERBOSITY verbose).
sub start_call
{
	my ($node, $sql, @settings) = @_;
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	$session->query_safe('\set VERBOSITY verbose');
	$session->query_safe("SET $_") foreach @settings;
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	$session->{started} = time;
	# The markers after it say when it returned (call_result).
	$session->query_until(qr/started/,
		"\\echo started\n$sql;\n\\echo '$DONE'\n\\warn '$DONE'\n");
	return ($session, $pid);
}

# Wait for a background call's output (or error) to match $re; the time it came.
sub wait_output
{
	my ($session, $re, $stream) = @_;
	pump_until($session->{run}, $session->{timeout}, \$session->{$stream}, $re);
	return time;
}

# call_result(SESSION): waits until the call start_call began has returned
# (or its session ended: a terminated backend), and returns its rows (out),
# what it wrote to stderr (err), its error's SQLSTATE (code, undef without
# an error), and when it returned (ended).  The session may run more.
sub call_result
{
	my ($session) = @_;
	my $run = $session->{run};
	$run->pump
	  until ($session->{stdout} =~ /\Q$DONE\E\n/ && $session->{stderr} =~ /\Q$DONE\E\n/)
	  || !$run->pumpable
	  || $session->{timeout}->is_expired;
	my $ended = time;
	die 'the call did not return' if $session->{timeout}->is_expired;
	my ($out, $err) = ($session->{stdout}, $session->{stderr});
	$out =~ s/\n?\Q$DONE\E\n//;
	$err =~ s/\Q$DONE\E\n//;
	$session->{stdout} = $session->{stderr} = '';
	my ($code) = $err =~ /(?:ERROR|FATAL):  ([0-9A-Z]{5}):/;
	return { out => $out, err => $err, code => $code, ended => $ended };
}

# A query that waits at the gate GATE (an advisory lock on the node it runs
# on; a replica's are its own) and returns a value of its own run.
sub gated_query
{
	my ($gate) = @_;
	return "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS run "
	  . "FROM pg_advisory_xact_lock_shared($gate)";
}

# Close the gate GATE on NODE: a session that holds it.
sub close_gate
{
	my ($node, $gate) = @_;
	my $session = $node->background_psql('postgres');
	$session->query_safe("SELECT pg_advisory_lock($gate)");
	$session->{gate} = $gate;
	return $session;
}

sub open_gate
{
	my ($session) = @_;
	$session->query_safe("SELECT pg_advisory_unlock($session->{gate})");
	$session->quit;
}

# How many sessions of NODE wait at the gate GATE.
sub gate_waiters
{
	my ($node, $gate) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $gate AND NOT granted");
}

# The SQL that says whether backend PID waits at the gate GATE, or (GATE
# undef) on one of stampede's locks.
sub waiting_on
{
	my ($pid, $gate) = @_;
	my $which = defined $gate ? "objid = $gate" : "objsubid = $LOCK_CLASS";
	return "SELECT count(*) > 0 FROM pg_locks WHERE pid = $pid AND locktype = 'advisory' "
	  . "AND $which AND NOT granted";
}

# leader_at_gate(NODE, GATE, SQL, SETTING...): start_call, then wait until
# the call's query waits at the gate.
sub leader_at_gate
{
	my ($node, $gate, $sql, @settings) = @_;
	my ($leader, $pid) = start_call($node, $sql, @settings);
	$node->poll_query_until('postgres', waiting_on($pid, $gate))
	  or die 'the leader did not reach the gate';
	return ($leader, $pid);
}

# How many of stampede's advisory locks NODE's backends (or backend PID) hold
# or wait for.
sub stampede_locks
{
	my ($node, $pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = $LOCK_CLASS"
		  . (defined $pid ? " AND pid = $pid" : ''));
}

package StampedeTest::Valkey;

use strict;
use warnings;

use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my @started;    # every redis-server started here: END stops those still running

# new(password => P, debug => 1 (DEBUG SLEEP allowed), unix_socket => 1,
# port => N): a redis-server on 127.0.0.1 at a free port (or N), without
# persistence, started.
sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		port => $opts{port} // PostgreSQL::Test::Cluster::get_free_port(),
		dir => PostgreSQL::Test::Utils::tempdir(),
		password => $opts{password},
		debug => $opts{debug},
		unix_socket => $opts{unix_socket},
	}, $class;
	$self->{socket} = "$self->{dir}/valkey.sock" if $self->{unix_socket};
	push @started, $self;
	$self->start;
	return $self;
}

sub port { return $_[0]->{port}; }
sub dir { return $_[0]->{dir}; }
sub socket_path { return $_[0]->{socket}; }

# Its URL for stampede.valkey_url.
sub url
{
	my ($self) = @_;
	my $auth = defined $self->{password} ? ":$self->{password}\@" : '';
	return "redis://${auth}127.0.0.1:$self->{port}";
}

sub start
{
	my ($self) = @_;
	my @cmd = (
		'redis-server', '--port', $self->{port}, '--bind', '127.0.0.1',
		'--save', '', '--appendonly', 'no', '--dir', $self->{dir});
	push @cmd, '--requirepass', $self->{password} if defined $self->{password};
	# DEBUG (SLEEP) is refused by default since Redis 7; local clients only.
	push @cmd, '--enable-debug-command', 'local' if $self->{debug};
	push @cmd, '--unixsocket', $self->{socket}, '--unixsocketperm', '777'
	  if $self->{unix_socket};
	$self->{run} = IPC::Run::start(\@cmd, '>>', "$self->{dir}/valkey.log", '2>&1');
	foreach (1 .. 300)
	{
		return if $self->cli('PING') eq 'PONG';
		sleep(0.05);
	}
	BAIL_OUT('redis-server did not start');
}

sub stop
{
	my ($self) = @_;
	return unless $self->{run};
	undef $self->{resp};
	$self->resume if $self->{hung};
	$self->{run}->signal('TERM');
	$self->{run}->finish;
	undef $self->{run};
}

# A Valkey that hangs: it still accepts connections (the kernel does), and
# answers nothing until resume.
sub hang
{
	my ($self) = @_;
	$self->{run}->signal('STOP');
	$self->{hung} = 1;
}

sub resume
{
	my ($self) = @_;
	$self->{run}->signal('CONT');
	$self->{hung} = 0;
}

sub _cli_cmd
{
	my ($self, @args) = @_;
	my @auth = defined $self->{password} ? ('--no-auth-warning', '-a', $self->{password}) : ();
	return ('redis-cli', '-h', '127.0.0.1', '-p', $self->{port}, @auth, @args);
}

# A redis-cli command: what it printed, less the last newline.
sub cli
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $self->_cli_cmd(@args) ], '>', \$out, '2>', \$err);
	chomp $out;
	return $out;
}

# A redis-cli command in the background (DEBUG SLEEP blocks its client).
sub cli_start
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	return IPC::Run::start([ $self->_cli_cmd(@args) ], '>', \$out, '2>', \$err);
}

# Does it answer a PING within 300 ms?  (Not during DEBUG SLEEP.)
sub answers
{
	my ($self) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'timeout', '0.3', $self->_cli_cmd('PING') ], '>', \$out, '2>', \$err);
	return $out =~ /PONG/;
}

# The names matching PATTERN (SCAN).
sub names
{
	my ($self, $pattern) = @_;
	return grep { length } split /\n/, $self->cli('--scan', '--pattern', $pattern);
}

# ---- a binary-safe RESP client: entries are bytes, not text ----

sub _resp_read
{
	my ($self) = @_;
	my $sock = $self->{resp};
	my $line = <$sock>;
	die 'Valkey closed the connection' unless defined $line;
	$line =~ s/\r\n\z//;
	my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
	return $rest if $type eq '+';
	die "Valkey: $rest" if $type eq '-';
	return $rest + 0 if $type eq ':';
	if ($type eq '$')
	{
		return undef if $rest < 0;
		my $buf = '';
		while (length($buf) < $rest + 2)
		{
			my $n = read($sock, $buf, $rest + 2 - length($buf), length($buf));
			die 'Valkey closed the connection' unless $n;
		}
		return substr($buf, 0, $rest);
	}
	if ($type eq '*')
	{
		return undef if $rest < 0;
		return [ map { $self->_resp_read() } 1 .. $rest ];
	}
	die "Valkey: unexpected reply \"$line\"";
}

# command(ARG...): Valkey's reply (an array reference for an array).
sub command
{
	my ($self, @args) = @_;
	unless ($self->{resp})
	{
		$self->{resp} = IO::Socket::INET->new(
			PeerAddr => '127.0.0.1',
			PeerPort => $self->{port},
			Proto => 'tcp') or die "cannot connect to Valkey: $!";
		binmode $self->{resp};
		$self->{resp}->autoflush(1);
		$self->command('AUTH', $self->{password}) if defined $self->{password};
	}
	my $msg = '*' . scalar(@args) . "\r\n";
	$msg .= '$' . length($_) . "\r\n$_\r\n" foreach @args;
	print { $self->{resp} } $msg;
	return $self->_resp_read();
}

END
{
	local $?;    # the test's exit status
	$_->stop foreach @started;
}

1;
